"""Write k8s/qmesh/values.schema.json, the JSON schema helm checks values against.

    python3 deploy/ci/gen-values-schema.py           # rewrite it
    python3 deploy/ci/gen-values-schema.py --check   # exit 1 if it is out of date

Written as code so the five service blocks share one definition. Unknown keys are errors
(a typo in values fails `helm install`), except under `global`, which parent charts share.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parents[2] / "k8s/qmesh/values.schema.json"
SERVICES = ("smtpd", "send", "local", "remote", "pop3d")
PORT_NAMES = "^(http|smtp|submission|smtps|qmtp|pop3|pop3s)$"


def S(**kw: Any) -> dict[str, Any]:
    return {"type": "string", **kw}


def I(**kw: Any) -> dict[str, Any]:  # noqa: E743
    return {"type": "integer", **kw}


def O(props: dict[str, Any], required: list[str] | None = None, extra: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        d["required"] = required
    return d


B = {"type": "boolean"}
MAP = {"type": "object", "additionalProperties": True}
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
LIST = {"type": "array"}
PEERS = {"type": "array", "items": MAP}
PORT = I(minimum=1, maximum=65535)
QUANTITY = {"type": ["string", "integer", "number"]}
DIGEST = S(pattern="^(|sha256:[a-f0-9]{64})$")
PROBE = O({
    "periodSeconds": I(minimum=1), "timeoutSeconds": I(minimum=1),
    "failureThreshold": I(minimum=1), "successThreshold": I(minimum=1),
    "initialDelaySeconds": I(minimum=0),
})
RESOURCES = O({
    "requests": O({"cpu": QUANTITY, "memory": QUANTITY, "ephemeral-storage": QUANTITY}),
    "limits": O({"cpu": QUANTITY, "memory": QUANTITY, "ephemeral-storage": QUANTITY},
                required=["memory"]),
}, required=["limits"])

COMPONENT = O({
    "enabled": B,
    "replicas": I(minimum=0),
    "image": O({"repository": S(), "tag": S(), "digest": DIGEST}),
    "uid": I(minimum=1000, maximum=2147483647),
    "ports": {"type": "object", "propertyNames": {"pattern": PORT_NAMES},
              "additionalProperties": PORT, "required": ["http"]},
    "resources": RESOURCES,
    "env": {"type": "object", "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "additionalProperties": {"type": ["string", "integer", "number", "boolean"]}},
    "probes": O({"liveness": PROBE, "readiness": PROBE, "startup": PROBE}),
    "terminationGracePeriodSeconds": I(minimum=0),
    "preStopSleepSeconds": I(minimum=0),
    "publicService": O({
        "enabled": B,
        "type": {"enum": ["LoadBalancer", "NodePort", "ClusterIP"]},
        "ports": {"type": "object", "propertyNames": {"pattern": PORT_NAMES},
                  "additionalProperties": PORT},
        "externalTrafficPolicy": {"enum": ["Local", "Cluster"]},
        "annotations": STRMAP,
        "loadBalancerClass": S(),
        "loadBalancerSourceRanges": {"type": "array", "items": S()},
    }),
    "pdb": O({"enabled": B, "maxUnavailable": {"type": ["integer", "string"]}}),
    "autoscaling": O({
        "enabled": B, "minReplicas": I(minimum=1), "maxReplicas": I(minimum=1),
        "targetCPUUtilizationPercentage": I(minimum=1, maximum=100),
    }),
    "keda": O({
        "enabled": B, "minReplicas": I(minimum=0), "maxReplicas": I(minimum=1),
        "lagThreshold": I(minimum=1), "activationLagThreshold": I(minimum=0),
    }),
    "credentials": O({
        "s3": O({"existingSecret": S(), "accessKey": S(), "secretKey": S()}),
        "nats": O({"existingSecret": S()}),
    }),
    "tmpSizeLimit": QUANTITY,
    "podAnnotations": STRMAP,
    "podLabels": STRMAP,
    "serviceAccount": O({"annotations": STRMAP}),
    "nodeSelector": STRMAP,
    "tolerations": LIST,
    "affinity": MAP,
    "topologySpreadConstraints": LIST,
    "priorityClassName": S(),
}, required=["enabled", "replicas", "uid", "ports", "resources", "probes"])


def schema() -> dict[str, Any]:
    root = O({
        "nameOverride": S(),
        "fullnameOverride": S(),
        "global": O({
            "image": O({
                "repository": S(minLength=1), "tag": S(), "digest": DIGEST,
                "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
            }),
            "imagePullSecrets": {"type": "array", "items": O({"name": S()})},
            "logLevel": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]},
            "commonLabels": STRMAP,
            "nats": O({"url": S(pattern="^(nats|tls|ws|wss)://"),
                       "jsReplicas": I(minimum=1, maximum=5)}),
            "s3": O({
                "endpoint": S(pattern="^[^/]+:[0-9]+$"), "secure": B, "region": S(),
                "queueBucket": S(minLength=3, maxLength=63),
                "mailBucket": S(minLength=3, maxLength=63),
                "credentials": O({"accessKey": S(), "secretKey": S()}),
            }),
        }, extra=True),
        "natsAuth": O({
            "mode": {"enum": ["password", "creds", "none"]}, "generate": B,
            "account": S(minLength=1), "userPrefix": S(), "serverSecretNamespace": S(),
            "admin": O({"enabled": B}),
        }),
        "control": {"type": "object",
                    "propertyNames": {"pattern": "^[a-z0-9][a-z0-9._-]*$"},
                    "additionalProperties": {"type": ["string", "integer", "null"]}},
        "tls": O({
            "enabled": B, "secretName": S(),
            "certManager": O({
                "enabled": B,
                "issuerRef": O({"name": S(), "kind": {"enum": ["Issuer", "ClusterIssuer"]},
                                "group": S()}),
                "dnsNames": {"type": "array", "items": S()},
                "duration": S(), "renewBefore": S(),
            }),
        }),
        "proxyProtocol": O({
            "enabled": B,
            "trustedCIDRs": {"type": "array",
                             "items": S(pattern="^[0-9a-fA-F:.]+/[0-9]{1,3}$")},
        }),
        "networkPolicy": O({
            "enabled": B, "namespaceDefaultDeny": B, "dnsPeers": PEERS,
            "natsPeers": PEERS, "natsPort": PORT, "s3Peers": PEERS,
            "s3Ports": {"type": "array", "items": PORT},
            "mailPeers": PEERS, "metricsPeers": PEERS,
            "remoteEgress": {"type": "array", "items": O(
                {"cidr": S(), "except": {"type": "array", "items": S()}}, required=["cidr"])},
            "remotePorts": {"type": "array", "items": PORT},
        }),
        "metrics": O({
            "serviceMonitor": O({"enabled": B, "interval": S(), "scrapeTimeout": S(),
                                 "labels": STRMAP}),
            "prometheusRule": O({
                "enabled": B, "labels": STRMAP,
                "queueAgeWarningSeconds": I(minimum=1),
                "queueAgeCriticalSeconds": I(minimum=1),
                "deferralRatioWarning": {"type": "number", "minimum": 0, "maximum": 1},
                "notReadyFor": S(),
            }),
        }),
        "keda": O({"natsMonitoringEndpoint": S(), "useHttps": B}),
        "namespace": O({"create": B}),
        "resourceQuota": O({"enabled": B, "hard": MAP}),
        **{name: {"$ref": "#/definitions/component"} for name in SERVICES},
        "setup": O({
            "enabled": B, "domains": {"type": "array", "items": S()},
            "postmaster": S(minLength=1), "uid": I(minimum=1000), "resources": RESOURCES,
            "activeDeadlineSeconds": I(minimum=1), "backoffLimit": I(minimum=0),
        }),
        "tests": O({
            "enabled": B, "recipient": S(), "relayRecipient": S(pattern="@"),
            "uid": I(minimum=1000), "resources": RESOURCES,
        }),
    })
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
            print("k8s/qmesh/values.schema.json is out of date: "
                  "python3 deploy/ci/gen-values-schema.py")
            return 1
        return 0
    OUTPUT.write_text(text)
    print("wrote k8s/qmesh/values.schema.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
