// A real OpenID provider (the certified `oidc-provider` package) on loopback for chatweb's sign-in tests.
// Configured by one JSON argument: {"port", "clients": [...], "accounts": {id: claims}}. It signs with its own
// RSA key, requires PKCE, and signs a person in without a password: the login page asks only for an account
// name (or takes `login_hint`), since the tests are about chatweb's side of the flow, not the provider's login.
// Test-only control endpoints under /__test__/ change an account's claims and alter the next ID token
// (re-signed with the provider's own key, or tampered after signing) to exercise chatweb's refusals.
import Provider from "oidc-provider";
import * as jose from "jose";

const config = JSON.parse(process.argv[2]);
const issuer = `http://127.0.0.1:${config.port}`;
const accounts = config.accounts;
let nextMutation = null;

const { privateKey } = await jose.generateKeyPair("RS256", { extractable: true });
const jwk = { ...(await jose.exportJWK(privateKey)), kid: "test-key", alg: "RS256", use: "sig" };

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: { keys: [jwk] },
  pkce: { required: () => true },
  scopes: ["openid", "email", "profile"],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "preferred_username", "given_name", "family_name", "groups"],
  },
  cookies: { keys: ["test-only-cookie-key"] },
  features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    if (!accounts[id]) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...accounts[id] }) };
  },
  // First-party client: consent is implied, so no consent page (the grant carries the requested scopes).
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const found = await ctx.oidc.provider.Grant.find(grantId);
      if (found) return found;
    }
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope("openid email profile");
    await grant.save();
    return grant;
  },
});
provider.proxy = false;

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");

async function mutate(idToken, kind) {
  const claims = jose.decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  if (kind === "tampered") {
    // Changed after signing: the signature no longer matches.
    const [header, , signature] = idToken.split(".");
    return `${header}.${b64({ ...claims, sub: "someone-else" })}.${signature}`;
  }
  if (kind === "audience") claims.aud = "another-application";
  if (kind === "expired") Object.assign(claims, { iat: now - 7200, exp: now - 3600 });
  if (kind === "issuer") claims.iss = "http://127.0.0.1:1/not-this-provider";
  return new jose.SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: jwk.kid, typ: "JWT" }).sign(privateKey);
}

provider.use(async (ctx, next) => {
  if (ctx.path === "/__test__/account" && ctx.method === "POST") {
    const { id, claims } = JSON.parse(await readBody(ctx.req));
    accounts[id] = claims;
    ctx.status = 204;
    return;
  }
  if (ctx.path === "/__test__/mutate" && ctx.method === "POST") {
    nextMutation = JSON.parse(await readBody(ctx.req)).kind;
    ctx.status = 204;
    return;
  }
  const match = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (match) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    let login = details.params.login_hint;
    if (ctx.method === "POST") login = new URLSearchParams(await readBody(ctx.req)).get("login");
    if (login && accounts[login]) {
      await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
      ctx.respond = false;
      return;
    }
    ctx.type = "html";
    ctx.body = `<!doctype html><title>Test provider sign-in</title><h1>Test provider</h1>
<form method="post"><label>Account <input name="login" autofocus></label><button type="submit">Sign in at provider</button></form>
${login ? "<p>No such account.</p>" : ""}`;
    return;
  }
  await next();
  if (ctx.path === "/token" && nextMutation && ctx.body && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: await mutate(ctx.body.id_token, nextMutation) };
    nextMutation = null;
  }
});

provider.listen(config.port, "127.0.0.1");
