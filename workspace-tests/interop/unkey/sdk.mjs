// Drives Keyroll's Unkey-compatible API with Unkey's own TypeScript SDK (npm @unkey/api 2.x),
// pointed at Keyroll by its server URL override. Prints what it saw as one JSON object.
//
//   node sdk.mjs <base url> <root key> <api id> <key prefix> <read-only root key>
import { Unkey } from "@unkey/api";
import * as errors from "@unkey/api/models/errors";

const [base, rootKey, apiId, prefix, readOnlyRoot] = process.argv.slice(2);
const unkey = new Unkey({ rootKey, serverURL: base });
const out = {};

// An error as the SDK raised it: its class, status and Unkey error type.
async function failure(call) {
  try {
    await call();
    return { class: null };
  } catch (e) {
    const data = e.data$ ?? {};
    return {
      class: e.constructor.name,
      status: e.statusCode ?? null,
      type: data.error?.type ?? null,
      errors: data.error?.errors ?? null,
      requestId: data.meta?.requestId ?? null,
      unkeyError: e instanceof errors.UnkeyError,
    };
  }
}

const expires = Date.now() + 3_600_000;
const created = await unkey.keys.createKey({
  apiId,
  prefix,
  name: "checkout service",
  externalId: "user_js",
  meta: { plan: "pro" },
  permissions: ["orders:read"],
  expires,
  credits: { remaining: 5 },
  ratelimits: [{ name: "requests", limit: 100, duration: 60_000, autoApply: true }],
});
out.created = { requestId: created.meta.requestId, keyId: created.data.keyId, key: created.data.key, expires };

out.verify = (await unkey.keys.verifyKey({ key: created.data.key })).data;
out.verifyAnd = (await unkey.keys.verifyKey({ key: created.data.key, permissions: "orders:read AND orders:write" })).data;
out.verifyOr = (await unkey.keys.verifyKey({ key: created.data.key, permissions: "orders:write OR (orders:read)" })).data;
out.verifyCost = (await unkey.keys.verifyKey({ key: created.data.key, credits: { cost: 2 } })).data;
out.verifyUnknown = (await unkey.keys.verifyKey({ key: `${prefix}_live_notakey` })).data;
out.get = (await unkey.keys.getKey({ keyId: created.data.keyId })).data;

await unkey.keys.updateKey({
  keyId: created.data.keyId,
  name: "renamed",
  meta: { plan: "team" },
  permissions: ["orders:read", "orders:write"],
  expires: null,
});
out.afterUpdate = (await unkey.keys.verifyKey({ key: created.data.key, permissions: "orders:write" })).data;
out.whoami = (await unkey.keys.whoami({ key: created.data.key })).data;
const listed = await unkey.apis.listKeys({ apiId, externalId: "user_js" });
out.list = { ids: listed.result.data.map((k) => k.keyId), pagination: listed.result.pagination };

const rerolled = await unkey.keys.rerollKey({ keyId: created.data.keyId, expiration: 60_000 });
out.reroll = { keyId: rerolled.data.keyId, key: rerolled.data.key, at: Date.now() };
out.oldAfterReroll = (await unkey.keys.verifyKey({ key: created.data.key })).data;
out.newAfterReroll = (await unkey.keys.verifyKey({ key: rerolled.data.key })).data;

await unkey.keys.deleteKey({ keyId: rerolled.data.keyId });
out.deletedVerify = (await unkey.keys.verifyKey({ key: rerolled.data.key })).data;
out.deletedGet = await failure(() => unkey.keys.getKey({ keyId: rerolled.data.keyId }));

out.badApi = await failure(() => unkey.keys.createKey({ apiId: "api_00000000000000000000000000", externalId: "x" }));
out.badPermission = await failure(() => unkey.keys.createKey({ apiId, externalId: "user_js", permissions: ["Not A Scope"] }));
out.badQuery = await failure(() => unkey.keys.verifyKey({ key: created.data.key, permissions: "orders:read AND" }));
out.badRoot = await failure(() => new Unkey({ rootKey: "kr_root_nope", serverURL: base }).keys.getKey({ keyId: created.data.keyId }));
out.readOnly = await failure(() => new Unkey({ rootKey: readOnlyRoot, serverURL: base }).keys.createKey({ apiId, externalId: "x" }));

console.log(JSON.stringify(out));
