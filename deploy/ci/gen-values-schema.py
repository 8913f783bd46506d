"""Write k8s/qmesh/values.schema.json, the JSON schema helm checks values against.

    python3 deploy/ci/gen-values-schema.py           # rewrite it
    python3 deploy/ci/gen-values-schema.py --check   # exit 1 if it is out of date

Written as code so the five service blocks share one definition. Unknown keys are errors
(a typo in values fails `helm install`), except under `global`, which parent charts share.
"""

# ruff: noqa: T201 - a command-line script: printing is its output

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parents[2] / "k8s/qmesh/values.schema.json"
SERVICES = ("smtpd", "send", "local", "remote", "pop3d", "imapd", "lists", "webadmin", "webmail")
PORT_NAMES = "^(http|smtp|submission|smtps|qmtp|pop3|pop3s|imap|imaps)$"


def string(**kw: Any) -> dict[str, Any]:
    return {"type": "string", **kw}


def integer(**kw: Any) -> dict[str, Any]:
    return {"type": "integer", **kw}


def obj(
    props: dict[str, Any], required: list[str] | None = None, extra: bool = False
) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        d["required"] = required
    return d


B = {"type": "boolean"}
MAP = {"type": "object", "additionalProperties": True}
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
LIST = {"type": "array"}
PEERS = {"type": "array", "items": MAP}
PORT = integer(minimum=1, maximum=65535)
QUANTITY = {"type": ["string", "integer", "number"]}
DIGEST = string(pattern="^(|sha256:[a-f0-9]{64})$")
PROBE = obj(
    {
        "periodSeconds": integer(minimum=1),
        "timeoutSeconds": integer(minimum=1),
        "failureThreshold": integer(minimum=1),
        "successThreshold": integer(minimum=1),
        "initialDelaySeconds": integer(minimum=0),
    }
)
RESOURCES = obj(
    {
        "requests": obj({"cpu": QUANTITY, "memory": QUANTITY, "ephemeral-storage": QUANTITY}),
        "limits": obj(
            {"cpu": QUANTITY, "memory": QUANTITY, "ephemeral-storage": QUANTITY},
            required=["memory"],
        ),
    },
    required=["limits"],
)

COMPONENT = obj(
    {
        "enabled": B,
        "replicas": integer(minimum=0),
        "image": obj({"repository": string(), "tag": string(), "digest": DIGEST}),
        "uid": integer(minimum=1000, maximum=2147483647),
        "ports": {
            "type": "object",
            "propertyNames": {"pattern": PORT_NAMES},
            "additionalProperties": PORT,
            "required": ["http"],
        },
        "resources": RESOURCES,
        "env": {
            "type": "object",
            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
        },
        "probes": obj({"liveness": PROBE, "readiness": PROBE, "startup": PROBE}),
        "terminationGracePeriodSeconds": integer(minimum=0),
        "preStopSleepSeconds": integer(minimum=0),
        "publicService": obj(
            {
                "enabled": B,
                "type": {"enum": ["LoadBalancer", "NodePort", "ClusterIP"]},
                "ports": {
                    "type": "object",
                    "propertyNames": {"pattern": PORT_NAMES},
                    "additionalProperties": PORT,
                },
                "externalTrafficPolicy": {"enum": ["Local", "Cluster"]},
                "annotations": STRMAP,
                "loadBalancerClass": string(),
                "loadBalancerSourceRanges": {"type": "array", "items": string()},
            }
        ),
        # webadmin and webmail only: an Ingress for their pages (issue 14)
        "ingress": obj(
            {
                "enabled": B,
                "className": string(),
                "host": string(minLength=1),
                "tlsSecretName": string(),
                "annotations": STRMAP,
            }
        ),
        # lists only: the base URL of one-click unsubscribe links (RFC 8058: HTTPS)
        "unsubscribeUrl": string(pattern="^(https://[^\\s/]+(/\\S*)?)?$"),
        "pdb": obj({"enabled": B, "maxUnavailable": {"type": ["integer", "string"]}}),
        "autoscaling": obj(
            {
                "enabled": B,
                "minReplicas": integer(minimum=1),
                "maxReplicas": integer(minimum=1),
                "targetCPUUtilizationPercentage": integer(minimum=1, maximum=100),
            }
        ),
        "keda": obj(
            {
                "enabled": B,
                "minReplicas": integer(minimum=0),
                "maxReplicas": integer(minimum=1),
                "lagThreshold": integer(minimum=1),
                "activationLagThreshold": integer(minimum=0),
            }
        ),
        "credentials": obj(
            {
                "s3": obj(
                    {"existingSecret": string(), "accessKey": string(), "secretKey": string()}
                ),
                "nats": obj({"existingSecret": string()}),
            }
        ),
        "tmpSizeLimit": QUANTITY,
        "podAnnotations": STRMAP,
        "podLabels": STRMAP,
        "serviceAccount": obj({"annotations": STRMAP}),
        "nodeSelector": STRMAP,
        "tolerations": LIST,
        "affinity": MAP,
        "topologySpreadConstraints": LIST,
        "priorityClassName": string(),
    },
    required=["enabled", "replicas", "uid", "ports", "resources", "probes"],
)


def schema() -> dict[str, Any]:
    root = obj(
        {
            "nameOverride": string(),
            "fullnameOverride": string(),
            "global": obj(
                {
                    "image": obj(
                        {
                            "repository": string(minLength=1),
                            "tag": string(),
                            "digest": DIGEST,
                            "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                        }
                    ),
                    "imagePullSecrets": {"type": "array", "items": obj({"name": string()})},
                    "logLevel": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]},
                    "dnsServers": string(pattern="^[^\\s]*$"),
                    "commonLabels": STRMAP,
                    "nats": obj(
                        {
                            "url": string(pattern="^(nats|tls|ws|wss)://"),
                            "jsReplicas": integer(minimum=1, maximum=5),
                        }
                    ),
                    "s3": obj(
                        {
                            "endpoint": string(pattern="^[^/]+:[0-9]+$"),
                            "secure": B,
                            "region": string(),
                            "queueBucket": string(minLength=3, maxLength=63),
                            "mailBucket": string(minLength=3, maxLength=63),
                            "credentials": obj({"accessKey": string(), "secretKey": string()}),
                        }
                    ),
                },
                extra=True,
            ),
            "natsAuth": obj(
                {
                    "mode": {"enum": ["password", "creds", "none"]},
                    "generate": B,
                    "account": string(minLength=1),
                    "userPrefix": string(),
                    "serverSecretNamespace": string(),
                    "admin": obj({"enabled": B}),
                }
            ),
            "control": {
                "type": "object",
                "propertyNames": {"pattern": "^[a-z0-9][a-z0-9._-]*$"},
                "additionalProperties": {"type": ["string", "integer", "null"]},
            },
            "tls": obj(
                {
                    "enabled": B,
                    "secretName": string(),
                    "selfSigned": B,
                    "certManager": obj(
                        {
                            "enabled": B,
                            "issuerRef": obj(
                                {
                                    "name": string(),
                                    "kind": {"enum": ["Issuer", "ClusterIssuer"]},
                                    "group": string(),
                                }
                            ),
                            "dnsNames": {"type": "array", "items": string()},
                            "duration": string(),
                            "renewBefore": string(),
                        }
                    ),
                }
            ),
            "rspamd": obj(
                {
                    "url": string(pattern="^(https?://[^\\s/]+.*)?$"),
                    "submission": B,
                    "tempfail": B,
                    "peers": {"type": "array", "items": MAP},
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                }
            ),
            "proxyProtocol": obj(
                {
                    "enabled": B,
                    "trustedCIDRs": {
                        "type": "array",
                        "items": string(pattern="^[0-9a-fA-F:.]+/[0-9]{1,3}$"),
                    },
                }
            ),
            "dkim": obj(
                {
                    "enabled": B,
                    "secretName": string(),
                    "domains": {
                        "type": "object",
                        "propertyNames": {"pattern": "^[a-z0-9][a-z0-9.-]*$"},
                        "additionalProperties": obj(
                            {
                                "selectors": {"type": "array", "items": string(minLength=1)},
                                "active": {"type": "array", "items": string(minLength=1)},
                            }
                        ),
                    },
                }
            ),
            "auth": obj({"dmarcReject": B}),  # the control dmarcreject (issue 11)
            "networkPolicy": obj(
                {
                    "enabled": B,
                    "namespaceDefaultDeny": B,
                    "dnsPeers": PEERS,
                    "natsPeers": PEERS,
                    "natsPort": PORT,
                    "s3Peers": PEERS,
                    "s3Ports": {"type": "array", "items": PORT},
                    "mailPeers": PEERS,
                    "metricsPeers": PEERS,
                    "adminPeers": PEERS,
                    "webmailPeers": PEERS,
                    "remoteEgress": {
                        "type": "array",
                        "items": obj(
                            {"cidr": string(), "except": {"type": "array", "items": string()}},
                            required=["cidr"],
                        ),
                    },
                    "remotePorts": {"type": "array", "items": PORT},
                }
            ),
            "metrics": obj(
                {
                    "serviceMonitor": obj(
                        {
                            "enabled": B,
                            "interval": string(),
                            "scrapeTimeout": string(),
                            "labels": STRMAP,
                        }
                    ),
                    "prometheusRule": obj(
                        {
                            "enabled": B,
                            "labels": STRMAP,
                            "queueAgeWarningSeconds": integer(minimum=1),
                            "queueAgeCriticalSeconds": integer(minimum=1),
                            "deferralRatioWarning": {"type": "number", "minimum": 0, "maximum": 1},
                            "notReadyFor": string(),
                        }
                    ),
                }
            ),
            "keda": obj({"natsMonitoringEndpoint": string(), "useHttps": B}),
            "namespace": obj({"create": B}),
            "resourceQuota": obj({"enabled": B, "hard": MAP}),
            **{name: {"$ref": "#/definitions/component"} for name in SERVICES},
            "setup": obj(
                {
                    "enabled": B,
                    "domains": {"type": "array", "items": string()},
                    "postmaster": string(minLength=1),
                    "uid": integer(minimum=1000),
                    "resources": RESOURCES,
                    "activeDeadlineSeconds": integer(minimum=1),
                    "backoffLimit": integer(minimum=0),
                }
            ),
            "tests": obj(
                {
                    "enabled": B,
                    "recipient": string(),
                    "relayRecipient": string(pattern="@"),
                    "uid": integer(minimum=1000),
                    "resources": RESOURCES,
                }
            ),
        }
    )
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "qmesh chart values",
        "definitions": {"component": COMPONENT},
        **root,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    args = parser.parse_args()
    text = json.dumps(schema(), indent=2) + "\n"
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(
                "k8s/qmesh/values.schema.json is out of date: "
                "python3 deploy/ci/gen-values-schema.py"
            )
            return 1
        return 0
    OUTPUT.write_text(text)
    print("wrote k8s/qmesh/values.schema.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
