"""Public forms: a form (or some of its fields) at an anonymous URL for lead
capture, with UTM capture, a honeypot, a per-IP rate limit and size limits."""
