"""admin: qmailadmin for the cluster, the directory and the queue in a browser (issue 14)."""
