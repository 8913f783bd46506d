"""webmail: sqwebmail for the cluster, one account's mail in the browser (issue 14)."""
