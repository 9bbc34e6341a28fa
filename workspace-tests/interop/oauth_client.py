"""Keyroll's tokens, driven and checked by independent libraries.

    oauth_client.py fetch BASE_URL CLIENT_ID CLIENT_SECRET [SCOPE]
        Asks for a token with Authlib's OAuth 2.0 client (client credentials, HTTP Basic) and
        prints the token response as JSON.
    oauth_client.py verify JWKS_URL ISSUER AUDIENCE TOKEN...
        Checks each token with PyJWT's PyJWKClient against the JWKS URL (a fresh client, so no
        key is remembered from before) and prints a JSON list: the claims, or {"error": …}.
"""

import json
import sys


def fetch(base, client_id, secret, scope=None):
    from authlib.integrations.requests_client import OAuth2Session

    session = OAuth2Session(client_id, secret, token_endpoint_auth_method="client_secret_basic", scope=scope)
    token = session.fetch_token(f"{base}/v1/oauth/token", grant_type="client_credentials")
    print(json.dumps(dict(token)))


def verify(jwks_url, issuer, audience, tokens):
    import jwt

    client = jwt.PyJWKClient(jwks_url, cache_keys=False, cache_jwk_set=False)
    out = []
    for t in tokens:
        try:
            key = client.get_signing_key_from_jwt(t)
            claims = jwt.decode(t, key.key, algorithms=["EdDSA"], audience=audience, issuer=issuer)
            out.append(claims)
        except Exception as e:  # every failure is an answer here
            out.append({"error": f"{type(e).__name__}: {e}"})
    print(json.dumps(out))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "fetch":
        fetch(*args)
    elif cmd == "verify":
        verify(args[0], args[1], args[2], args[3:])
    else:
        sys.exit(f"unknown command {cmd}")
