{{/*
Names, labels and the small values every template shares.
Helpers that concern one service take (dict "root" $ "name" "smtpd").
*/}}

{{- define "qmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix, short enough for "<fullname>-remote-nats" to fit in 63. */}}
{{- define "qmesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The service's own objects: "<fullname>-<name>". */}}
{{- define "qmesh.componentName" -}}
{{- printf "%s-%s" (include "qmesh.fullname" .root) .name -}}
{{- end -}}

{{/* Selector labels; with "name" set they select one service (component). */}}
{{- define "qmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .name }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* Labels of every object: the selector labels plus version and ownership. */}}
{{- define "qmesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "qmesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: qmesh
{{- with .root.Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Image reference: per-service fields override global ones; a digest pins it. */}}
{{- define "qmesh.image" -}}
{{- $g := .root.Values.global.image -}}
{{- $c := .image | default dict -}}
{{- $repo := $c.repository | default $g.repository -}}
{{- $tag := $c.tag | default $g.tag | default .root.Chart.AppVersion -}}
{{- $digest := $c.digest | default $g.digest -}}
{{- if $digest -}}
{{- printf "%s:%s@%s" $repo $tag $digest -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/* The canonical local domain: first entry of control "locals", else "me" (SEND-16). */}}
{{- define "qmesh.canonicalDomain" -}}
{{- $found := "" -}}
{{- range (splitList "\n" (toString (index .Values.control "locals" | default ""))) -}}
{{- $line := trimSuffix "\r" . | trimAll " \t" -}}
{{- if and (not $found) $line (not (hasPrefix "#" $line)) -}}
{{- $found = $line -}}
{{- end -}}
{{- end -}}
{{- if not $found -}}
{{- $found = index (splitList "\n" (toString (index .Values.control "me" | default ""))) 0 | trimAll " \t\r" -}}
{{- end -}}
{{- lower $found -}}
{{- end -}}

{{/*
A value as the text a program reads. YAML numbers reach templates as float64, which toString
writes as "2e+06": whole numbers are written as integers, anything else as it is.
*/}}
{{- define "qmesh.scalar" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) (lt . 1e15) (gt . -1e15) -}}
{{- printf "%d" (int64 .) -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* Data of the control ConfigMap, one file per key (also hashed onto every pod). */}}
{{- define "qmesh.controlData" -}}
{{- $files := dict -}}
{{- range $file, $content := .Values.control -}}
{{- if not (kindIs "invalid" $content) -}}
{{- $text := include "qmesh.scalar" $content -}}
{{- $_ := set $files $file (ternary $text (printf "%s\n" $text) (hasSuffix "\n" $text)) -}}
{{- end -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $_ := set $files "tlscert" "/etc/qmesh/tls/tls.crt\n" -}}
{{- $_ := set $files "tlskey" "/etc/qmesh/tls/tls.key\n" -}}
{{- end -}}
{{- if .Values.rspamd.url -}}
{{- $_ := set $files "rspamd" (printf "%s\n" .Values.rspamd.url) -}}
{{- $_ := set $files "rspamdsubmission" (ternary "1\n" "0\n" .Values.rspamd.submission) -}}
{{- $_ := set $files "rspamdtempfail" (ternary "1\n" "0\n" .Values.rspamd.tempfail) -}}
{{- end -}}
{{- if .Values.auth.dmarcReject -}}
{{- $_ := set $files "dmarcreject" "1\n" -}}
{{- end -}}
{{- if .Values.proxyProtocol.enabled -}}
{{- $_ := set $files "proxyclients" (printf "%s\n" (join "\n" .Values.proxyProtocol.trustedCIDRs)) -}}
{{- end -}}
{{- toYaml $files -}}
{{- end -}}

{{/* Services in the order the chart renders them. */}}
{{- define "qmesh.services" -}}
smtpd send local remote pop3d imapd lists webadmin webmail
{{- end -}}

{{/* The services that keep mail in S3: webadmin (admin's pages) only reaches NATS. */}}
{{- define "qmesh.s3Services" -}}
smtpd send local remote pop3d imapd lists webmail
{{- end -}}

{{/* The program a component runs: `qmesh run admin` for webadmin, whose NATS user and
Secrets must not be the commands' user "admin"; the others run their own name. */}}
{{- define "qmesh.program" -}}
{{- ternary "admin" . (eq . "webadmin") -}}
{{- end -}}

{{/* Public port of each listener (container port name -> Service port). */}}
{{- define "qmesh.standardPort" -}}
{{- get (dict "http" "8080" "smtp" "25" "submission" "587" "smtps" "465" "qmtp" "209" "pop3" "110" "pop3s" "995" "imap" "143" "imaps" "993") . -}}
{{- end -}}

{{- define "qmesh.natsUser" -}}
{{- printf "%s%s" .root.Values.natsAuth.userPrefix .name -}}
{{- end -}}

{{- define "qmesh.natsSecretName" -}}
{{- $v := index .root.Values .name -}}
{{- $v.credentials.nats.existingSecret | default (printf "%s-nats" (include "qmesh.componentName" .)) -}}
{{- end -}}

{{- define "qmesh.s3SecretName" -}}
{{- $v := index .root.Values .name -}}
{{- $v.credentials.s3.existingSecret | default (printf "%s-s3" (include "qmesh.componentName" .)) -}}
{{- end -}}

{{- define "qmesh.dkimSecretName" -}}
{{- .Values.dkim.secretName | default (printf "%s-dkim" (include "qmesh.fullname" .)) -}}
{{- end -}}

{{/* The `selector` files of the DKIM domains (ConfigMap data, mounted into remote only). */}}
{{- define "qmesh.dkimSelectors" -}}
{{- $files := dict -}}
{{- range $domain, $d := .Values.dkim.domains -}}
{{- $_ := set $files (printf "%s_selector" $domain) (printf "%s\n" (join "\n" $d.active)) -}}
{{- end -}}
{{- toYaml $files -}}
{{- end -}}

{{- define "qmesh.tlsSecretName" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "qmesh.fullname" .)) -}}
{{- end -}}

{{/* Restricted Pod Security: pod level. */}}
{{- define "qmesh.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Restricted Pod Security: container level. */}}
{{- define "qmesh.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment shared by the services and the setup Job (NATS, S3, control, logs). */}}
{{- define "qmesh.commonEnv" -}}
{{- $g := .root.Values.global -}}
- name: QMESH_NATS_URL
  value: {{ $g.nats.url | quote }}
{{- if eq .root.Values.natsAuth.mode "password" }}
- name: QMESH_NATS_USER
  value: {{ include "qmesh.natsUser" . | quote }}
- name: QMESH_NATS_PASSWORD_FILE
  value: /etc/qmesh/secrets/nats/password
{{- else if eq .root.Values.natsAuth.mode "creds" }}
- name: QMESH_NATS_CREDS
  value: /etc/qmesh/secrets/nats/user.creds
{{- end }}
- name: QMESH_JS_REPLICAS
  value: {{ $g.nats.jsReplicas | quote }}
- name: QMESH_CONTROL
  value: /etc/qmesh/control
- name: QMESH_LOG_LEVEL
  value: {{ $g.logLevel | quote }}
{{- with $g.dnsServers }}
- name: QMESH_DNS_SERVERS
  value: {{ . | quote }}
{{- end }}
- name: TMPDIR
  value: /tmp
- name: HOME
  value: /tmp
{{- end -}}

{{- define "qmesh.s3Env" -}}
{{- $s3 := .root.Values.global.s3 -}}
- name: QMESH_STORE
  value: s3
- name: QMESH_S3_ENDPOINT
  value: {{ $s3.endpoint | quote }}
- name: QMESH_S3_SECURE
  value: {{ $s3.secure | toString | quote }}
{{- with $s3.region }}
- name: QMESH_S3_REGION
  value: {{ . | quote }}
{{- end }}
- name: QMESH_S3_ACCESS_KEY_FILE
  value: /etc/qmesh/secrets/s3/access-key
- name: QMESH_S3_SECRET_KEY_FILE
  value: /etc/qmesh/secrets/s3/secret-key
- name: QMESH_QUEUE_BUCKET
  value: {{ $s3.queueBucket | quote }}
- name: QMESH_MAIL_BUCKET
  value: {{ $s3.mailBucket | quote }}
{{- end -}}

{{/*
Base URL of the lists' RFC 8058 one-click unsubscribe links (issue #15): lists.unsubscribeUrl,
else the admin Ingress's host over HTTPS when admin's pages are served there, else empty.
*/}}
{{- define "qmesh.unsubscribeUrl" -}}
{{- $admin := .Values.webadmin -}}
{{- if .Values.lists.unsubscribeUrl -}}
{{- .Values.lists.unsubscribeUrl -}}
{{- else if and $admin.enabled $admin.ingress.enabled $admin.ingress.host -}}
{{- printf "https://%s" $admin.ingress.host -}}
{{- end -}}
{{- end -}}
