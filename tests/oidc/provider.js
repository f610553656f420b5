// A real OpenID Connect provider for the tests: node oidc-provider (OpenID certified), on the
// loopback, with the accounts below and a minimal sign-in page (no consent screen: the
// product is a first-party client). Started by tests/oidc_provider.py; prints one line,
// "ready <issuer>", once it listens.
//
//   node provider.js PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI POST_LOGOUT_REDIRECT_URI
import { parse } from 'node:querystring';

import Provider from 'oidc-provider';

// login → its subject, password and claims. The subjects are opaque ids, as a province's
// identity provider gives them: the product maps them to officials, it does not trust names.
export const ACCOUNTS = {
  nv001: { sub: '5f0c2a9e-0001-4b7e-9d1c-laocai-nv001', password: 'idp-nv001',
    claims: { preferred_username: 'laocai.sxd.nv001', name: 'Cán bộ số 1', email: 'nv001@laocai.gov.vn' } },
  truongphong: { sub: '5f0c2a9e-0002-4b7e-9d1c-laocai-qlxd', password: 'idp-truongphong',
    claims: { preferred_username: 'laocai.sxd.qlxd.truongphong', name: 'Trưởng phòng QLXD' } },
  giamdoc: { sub: '5f0c2a9e-0003-4b7e-9d1c-laocai-sxd', password: 'idp-giamdoc',
    claims: { preferred_username: 'laocai.sxd.giamdoc', name: 'Giám đốc Sở Xây dựng' } },
  // an account of the provider that no official of the product is linked to
  khach: { sub: '5f0c2a9e-0009-4b7e-9d1c-stranger', password: 'idp-khach',
    claims: { preferred_username: 'khach.vanglai', name: 'Khách vãng lai' } },
};

const [port, clientId, clientSecret, redirectUri, postLogoutUri] = process.argv.slice(2);
if (!postLogoutUri) {
  console.error('usage: node provider.js PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI POST_LOGOUT_URI');
  process.exit(2);
}
const bySubject = Object.fromEntries(Object.values(ACCOUNTS).map((a) => [a.sub, a]));
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: [postLogoutUri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },                 // S256 only, the default method list
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email'] },
  cookies: { keys: ['nd73-tests-oidc-provider-cookie-key'] },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      // the confirmation page, plain (the default one loads a web font from the internet)
      async logoutSource(ctx, form) {
        ctx.body = `<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Sign out</title></head><body><h1>Sign out of the test identity provider?</h1>${form}
<button type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button></body></html>`;
      },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const account = bySubject[sub];
    if (!account) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...account.claims }) };
  },
  // first-party client: the scopes asked for are granted without a consent screen
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile email');
    await grant.save();
    return grant;
  },
});

function page(uid, error) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test identity provider</title></head>
<body><h1>Test identity provider</h1>${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}">
<label>Login <input name="login" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form></body></html>`;
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return parse(Buffer.concat(chunks).toString('utf8'));
}

provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!match) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.prompt.name !== 'login') ctx.throw(501, `prompt ${details.prompt.name}`);
  ctx.set('Cache-Control', 'no-store');
  ctx.type = 'html';
  if (ctx.method === 'GET') {
    ctx.body = page(details.uid);
    return undefined;
  }
  const form = await readForm(ctx.req);
  const account = ACCOUNTS[form.login];
  if (!account || account.password !== form.password) {
    ctx.status = 401;
    ctx.body = page(details.uid, 'Wrong login or password');
    return undefined;
  }
  const to = await provider.interactionResult(ctx.req, ctx.res,
    { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
  ctx.redirect(to);
  return undefined;
});

provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
