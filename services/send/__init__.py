"""send: qmail-send and qmail-clean — preprocess, schedule, retry, bounce, clean."""
