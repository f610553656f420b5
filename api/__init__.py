"""HTTP and command-line front of ND73 Workflow (Flask application factory and the nd73 CLI)."""
