"""Drives Keyroll's Unkey-compatible API with Unkey's own Python SDK (PyPI unkey.py 3.x),
pointed at Keyroll by its server URL override. Prints what it saw as one JSON object.

    python3 sdk.py <base url> <root key> <api id> <key prefix> <read-only root key>
"""

import json
import sys
import time

from unkey.py import Unkey, errors

base, root_key, api_id, prefix, read_only_root = sys.argv[1:6]
unkey = Unkey(root_key=root_key, server_url=base)
out = {}


def dump(model):
    return model.model_dump(by_alias=True, exclude_none=True)


def failure(call):
    """An error as the SDK raised it: its class, status and Unkey error type."""
    try:
        call()
        return {"class": None}
    except errors.UnkeyError as e:
        data = getattr(e, "data", None)
        error = getattr(data, "error", None)
        return {
            "class": type(e).__name__,
            "status": e.status_code,
            "type": getattr(error, "type", None),
            "errors": [dump(x) for x in getattr(error, "errors", None) or []] or None,
            "requestId": getattr(getattr(data, "meta", None), "request_id", None),
            "unkeyError": True,
        }


expires = int(time.time() * 1000) + 3_600_000
created = unkey.keys.create_key(
    api_id=api_id,
    prefix=prefix,
    name="checkout service",
    external_id="user_py",
    meta={"plan": "pro"},
    permissions=["orders:read"],
    expires=expires,
    credits={"remaining": 5},
    ratelimits=[{"name": "requests", "limit": 100, "duration": 60_000, "auto_apply": True}],
)
key, key_id = created.data.key, created.data.key_id
out["created"] = {"requestId": created.meta.request_id, "keyId": key_id, "key": key, "expires": expires}

verify = unkey.keys.verify_key
out["verify"] = dump(verify(key=key).data)
out["verifyAnd"] = dump(verify(key=key, permissions="orders:read AND orders:write").data)
out["verifyOr"] = dump(verify(key=key, permissions="orders:write OR (orders:read)").data)
out["verifyCost"] = dump(verify(key=key, credits={"cost": 2}).data)
out["verifyWrongKeyspace"] = dump(verify(key=key, keyspaces=["api_00000000000000000000000000"]).data)
out["verifyUnknown"] = dump(verify(key=f"{prefix}_live_notakey").data)
out["get"] = dump(unkey.keys.get_key(key_id=key_id).data)

unkey.keys.update_key(
    key_id=key_id,
    name="renamed",
    meta={"plan": "team"},
    permissions=["orders:read", "orders:write"],
    expires=None,
)
out["afterUpdate"] = dump(verify(key=key, permissions="orders:write").data)
out["whoami"] = dump(unkey.keys.whoami(key=key).data)
listed = unkey.apis.list_keys(api_id=api_id, external_id="user_py")
out["list"] = {"ids": [k.key_id for k in listed.result.data], "pagination": dump(listed.result.pagination)}

rerolled = unkey.keys.reroll_key(key_id=key_id, expiration=60_000)
out["reroll"] = {"keyId": rerolled.data.key_id, "key": rerolled.data.key, "at": int(time.time() * 1000)}
out["oldAfterReroll"] = dump(verify(key=key).data)
out["newAfterReroll"] = dump(verify(key=rerolled.data.key).data)

unkey.keys.delete_key(key_id=rerolled.data.key_id)
out["deletedVerify"] = dump(verify(key=rerolled.data.key).data)
out["deletedGet"] = failure(lambda: unkey.keys.get_key(key_id=rerolled.data.key_id))

out["badApi"] = failure(lambda: unkey.keys.create_key(api_id="api_00000000000000000000000000", external_id="x"))
out["badPermission"] = failure(
    lambda: unkey.keys.create_key(api_id=api_id, external_id="user_py", permissions=["Not A Scope"])
)
out["badQuery"] = failure(lambda: verify(key=key, permissions="orders:read AND"))
out["badRoot"] = failure(lambda: Unkey(root_key="kr_root_nope", server_url=base).keys.get_key(key_id=key_id))
out["readOnly"] = failure(
    lambda: Unkey(root_key=read_only_root, server_url=base).keys.create_key(api_id=api_id, external_id="x")
)

print(json.dumps(out))
