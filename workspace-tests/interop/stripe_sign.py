"""Signs a Stripe webhook body with Stripe's own Python library, as Stripe signs its deliveries.

Usage: stripe_sign.py SECRET [TIMESTAMP] < body  ->  prints the Stripe-Signature header.
"""

import sys

from stripe._webhook import WebhookSignature

secret = sys.argv[1]
timestamp = int(sys.argv[2]) if len(sys.argv) > 2 else None
body = sys.stdin.read()
print(WebhookSignature.generate_signature_header(body, secret, timestamp))
