"""A small Stripe stand-in for the calls localstripe does not cover (Checkout Sessions, the
Billing Portal, invoices of the new shape, Billing Meter events): it answers them as Stripe
does, in the fields Keyroll reads, and records every request so a test can assert exactly what
Keyroll sent. Every URL it hands out points back at itself (loopback).

A key containing "refused" is answered 401, as Stripe answers a revoked key.

Prints its port on the first line, then serves until killed.
    GET /__requests  ->  [{"method", "path", "query", "form", "idempotency_key", "authorization"}]
    POST /__subscriptions {"id", "customer", "status", "price"}  ->  sets what
        GET /v1/subscriptions/{id} answers (the state a test moves a subscription to)
"""

import json
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REQUESTS = []
COUNTER = [0]
SUBSCRIPTIONS = {}


def next_id(prefix):
    COUNTER[0] += 1
    return f"{prefix}_rec{COUNTER[0]:06d}"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self, form):
        url = urllib.parse.urlsplit(self.path)
        REQUESTS.append({
            "method": self.command,
            "path": url.path,
            "query": dict(urllib.parse.parse_qsl(url.query)),
            "form": form,
            "idempotency_key": self.headers.get("Idempotency-Key"),
            "authorization": self.headers.get("Authorization"),
        })
        return url.path

    def do_GET(self):
        if self.path == "/__requests":
            return self.reply(200, REQUESTS)
        path = self.record({})
        if path.startswith("/v1/subscriptions/") and path.rsplit("/", 1)[1] in SUBSCRIPTIONS:
            s = SUBSCRIPTIONS[path.rsplit("/", 1)[1]]
            return self.reply(200, {"id": s["id"], "object": "subscription", "customer": s["customer"],
                                    "status": s["status"], "items": {"object": "list", "data": [{
                                        "id": "si_rec", "object": "subscription_item", "price": {"id": s["price"]},
                                        "current_period_start": 1796000000, "current_period_end": 1798600000}]}})
        if path == "/v1/invoices":
            return self.reply(200, {"object": "list", "has_more": False, "url": "/v1/invoices", "data": [{
                "id": "in_rec000001", "object": "invoice", "number": "KR-0001", "status": "paid",
                "total": 4900, "currency": "usd", "created": 1796000000,
                "hosted_invoice_url": f"http://127.0.0.1:{PORT}/invoices/in_rec000001",
            }]})
        return self.reply(404, {"error": {"type": "invalid_request_error", "message": f"No such route {path}"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        if self.path == "/__subscriptions":
            s = json.loads(raw)
            SUBSCRIPTIONS[s["id"]] = s
            return self.reply(200, s)
        form = dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))
        path = self.record(form)
        if "refused" in (self.headers.get("Authorization") or ""):
            return self.reply(401, {"error": {"type": "invalid_request_error",
                                              "message": "Invalid API Key provided: rk_test_****used"}})
        if path == "/v1/customers":
            return self.reply(200, {"id": next_id("cus"), "object": "customer", "metadata": {}})
        if path == "/v1/checkout/sessions":
            sid = next_id("cs_test")
            return self.reply(200, {"id": sid, "object": "checkout.session", "mode": form.get("mode"),
                                    "url": f"http://127.0.0.1:{PORT}/checkout/{sid}"})
        if path == "/v1/billing_portal/sessions":
            sid = next_id("bps")
            return self.reply(200, {"id": sid, "object": "billing_portal.session",
                                    "url": f"http://127.0.0.1:{PORT}/portal/{sid}"})
        if path == "/v1/billing/meter_events":
            return self.reply(200, {"object": "billing.meter_event", "event_name": form.get("event_name"),
                                    "identifier": form.get("identifier"), "created": 1796000000,
                                    "livemode": False, "payload": {}, "timestamp": 1796000000})
        return self.reply(404, {"error": {"type": "invalid_request_error", "message": f"No such route {path}"}})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
PORT = server.server_address[1]
print(PORT, flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
