"""Official documents (Nghị định 30/2020/NĐ-CP): registers, rendering, conversion."""
