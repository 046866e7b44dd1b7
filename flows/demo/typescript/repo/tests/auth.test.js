// End to end across the three clusters, on the compiled code (tsc -p . writes dist/).
const test = require('node:test');
const assert = require('node:assert');
const { UserStore } = require('../dist/auth-db/store.js');
const { AuthService } = require('../dist/auth-api/service.js');
const { SessionContext } = require('../dist/auth-ui/context.js');

test('register, log in, ask who I am, log out', async () => {
  const api = new AuthService(new UserStore());
  const registered = await api['POST /register']({ email: 'ada@example.com', password: 'lovelace' });
  assert.strictEqual(registered.user.email, 'ada@example.com');
  const session = new SessionContext(api);
  await session.login('ada@example.com', 'lovelace');
  assert.strictEqual(session.user && session.user.email, 'ada@example.com');
  assert.deepStrictEqual(await api['GET /me'](), session.user);
  session.logout();
  assert.strictEqual(session.user, null);
});

test('a wrong password is refused and nobody is logged in', async () => {
  const api = new AuthService(new UserStore());
  await api['POST /register']({ email: 'bob@example.com', password: 'right' });
  const session = new SessionContext(api);
  await assert.rejects(session.login('bob@example.com', 'wrong'), /invalid email or password/);
  assert.strictEqual(session.user, null);
});
