"""lists' Prometheus metrics, ``qmesh_lists_<what>_<unit>``; counted in the adapter."""

from __future__ import annotations

from prometheus_client import Counter

REQUESTS = Counter("qmesh_lists_requests_total", "List messages handled", ["kind", "result"])
POSTS = Counter("qmesh_lists_posts_total", "Posts sent to the subscribers (one enqueue each)")
RECIPIENTS = Counter("qmesh_lists_post_recipients_total", "Subscribers addressed by posts")
BOUNCES = Counter("qmesh_lists_bounces_total", "Bounces counted for subscribers", ["result"])
DIGESTS = Counter("qmesh_lists_digests_total", "Digests sent", ["why"])  # post or timer
SHUNTED = Counter("qmesh_lists_shunted_total", "List jobs shunted after failing with a bug")
