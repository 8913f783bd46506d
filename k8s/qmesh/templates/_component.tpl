{{/*
One qmail process as a Kubernetes workload. Every service is rendered by this template from
its values block (same keys for all five): ServiceAccount, Deployment, Service, the public
(LoadBalancer) Service for listeners, PodDisruptionBudget, and HorizontalPodAutoscaler or KEDA
ScaledObject. Called as: include "qmesh.component" (dict "root" $ "name" "smtpd")
*/}}
{{- define "qmesh.component" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $v := index $root.Values $name -}}
{{- if $v.enabled -}}
{{- $full := include "qmesh.componentName" . -}}
{{- $mailPorts := omit $v.ports "http" -}}
{{- $tls := and $root.Values.tls.enabled (gt (len $mailPorts) 0) -}}
{{- $s3 := has $name (splitList " " (include "qmesh.s3Services" $root)) -}}
{{- $credentials := or $s3 (ne $root.Values.natsAuth.mode "none") -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $full }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "qmesh.labels" . | nindent 4 }}
  {{- with $v.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $full }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "qmesh.labels" . | nindent 4 }}
spec:
  {{- if not (or $v.autoscaling.enabled $v.keda.enabled) }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "qmesh.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- include "qmesh.labels" . | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/control: {{ include "qmesh.controlData" $root | sha256sum }}
        {{- if and (eq $name "remote") $root.Values.dkim.enabled }}
        checksum/dkim: {{ include "qmesh.dkimSelectors" $root | sha256sum }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ $full }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      securityContext:
        {{- include "qmesh.podSecurityContext" $v | nindent 8 }}
      {{- with $root.Values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      containers:
        - name: {{ $name }}
          image: {{ include "qmesh.image" (dict "root" $root "image" $v.image) | quote }}
          imagePullPolicy: {{ $root.Values.global.image.pullPolicy }}
          args: ["run", {{ include "qmesh.program" $name | quote }}]
          ports:
            {{- range $port, $number := $v.ports }}
            - name: {{ $port }}
              containerPort: {{ $number }}
              protocol: TCP
            {{- end }}
          env:
            {{- include "qmesh.commonEnv" . | nindent 12 }}
            {{- if $s3 }}
            {{- include "qmesh.s3Env" . | nindent 12 }}
            {{- end }}
            {{- range $port, $number := $v.ports }}
            - name: {{ printf "QMESH_%s_PORT" (upper $port) }}
              value: {{ $number | quote }}
            {{- end }}
            {{- range $key, $value := $v.env }}
            - name: {{ $key }}
              value: {{ include "qmesh.scalar" $value | quote }}
            {{- end }}
            {{- if and (eq $name "lists") (not (hasKey $v.env "QMESH_LISTS_UNSUBSCRIBE_URL")) }}
            {{- with include "qmesh.unsubscribeUrl" $root }}
            - name: QMESH_LISTS_UNSUBSCRIBE_URL
              value: {{ . | quote }}
            {{- end }}
            {{- end }}
          volumeMounts:
            - name: control
              mountPath: /etc/qmesh/control
              readOnly: true
            {{- if $credentials }}
            - name: credentials
              mountPath: /etc/qmesh/secrets
              readOnly: true
            {{- end }}
            - name: tmp
              mountPath: /tmp
            {{- if $tls }}
            - name: tls
              mountPath: /etc/qmesh/tls
              readOnly: true
            {{- end }}
          securityContext:
            {{- include "qmesh.containerSecurityContext" $v | nindent 12 }}
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $v.probes.startup | nindent 12 }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $v.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            {{- toYaml $v.probes.readiness | nindent 12 }}
          {{- if gt (int $v.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              exec:
                command: ["sleep", {{ $v.preStopSleepSeconds | quote }}]
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
      volumes:
        - name: control
          {{- if and (eq $name "remote") $root.Values.dkim.enabled }}
          {{- /* the control files, and the DKIM keys for remote only (issue 11) */}}
          projected:
            defaultMode: 0400
            sources:
              - configMap:
                  name: {{ include "qmesh.fullname" $root }}-control
              - configMap:
                  name: {{ include "qmesh.fullname" $root }}-dkim
                  items:
                    {{- range $domain, $d := $root.Values.dkim.domains }}
                    - key: {{ printf "%s_selector" $domain }}
                      path: {{ printf "domainkeys/%s/selector" $domain }}
                    {{- end }}
              - secret:
                  name: {{ include "qmesh.dkimSecretName" $root }}
                  items:
                    {{- range $domain, $d := $root.Values.dkim.domains }}
                    {{- range $selector := $d.selectors }}
                    - key: {{ printf "%s_%s" $domain $selector }}
                      path: {{ printf "domainkeys/%s/%s" $domain $selector }}
                    {{- end }}
                    {{- end }}
          {{- else }}
          configMap:
            name: {{ include "qmesh.fullname" $root }}-control
          {{- end }}
        {{- if $credentials }}
        - name: credentials
          projected:
            defaultMode: 0400
            sources:
              {{- if $s3 }}
              - secret:
                  name: {{ include "qmesh.s3SecretName" . }}
                  items:
                    - key: accessKey
                      path: s3/access-key
                    - key: secretKey
                      path: s3/secret-key
              {{- end }}
              {{- if ne $root.Values.natsAuth.mode "none" }}
              - secret:
                  name: {{ include "qmesh.natsSecretName" . }}
                  items:
                    {{- if eq $root.Values.natsAuth.mode "creds" }}
                    - key: nats.creds
                      path: nats/user.creds
                    {{- else }}
                    - key: password
                      path: nats/password
                    {{- end }}
              {{- end }}
        {{- end }}
        - name: tmp
          emptyDir:
            sizeLimit: {{ $v.tmpSizeLimit }}
        {{- if $tls }}
        - name: tls
          secret:
            secretName: {{ include "qmesh.tlsSecretName" $root }}
            defaultMode: 0400
            items:
              - key: tls.crt
                path: tls.crt
              - key: tls.key
                path: tls.key
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      topologySpreadConstraints:
        {{- if $v.topologySpreadConstraints }}
        {{- toYaml $v.topologySpreadConstraints | nindent 8 }}
        {{- else }}
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "qmesh.selectorLabels" . | nindent 14 }}
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $full }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "qmesh.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "qmesh.selectorLabels" . | nindent 4 }}
  ports:
    {{- range $port, $number := $v.ports }}
    - name: {{ $port }}
      port: {{ include "qmesh.standardPort" $port }}
      targetPort: {{ $port }}
      protocol: TCP
    {{- end }}
{{- if $v.publicService.enabled }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $full }}-public
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "qmesh.labels" . | nindent 4 }}
  {{- with $v.publicService.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $v.publicService.type }}
  {{- if has $v.publicService.type (list "LoadBalancer" "NodePort") }}
  externalTrafficPolicy: {{ $v.publicService.externalTrafficPolicy }}
  {{- end }}
  {{- if eq $v.publicService.type "LoadBalancer" }}
  {{- with $v.publicService.loadBalancerClass }}
  loadBalancerClass: {{ . }}
  {{- end }}
  {{- with $v.publicService.loadBalancerSourceRanges }}
  loadBalancerSourceRanges:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  selector:
    {{- include "qmesh.selectorLabels" . | nindent 4 }}
  ports:
    {{- range $port, $number := $v.publicService.ports }}
    - name: {{ $port }}
      port: {{ $number }}
      targetPort: {{ $port }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- if $v.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $full }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "qmesh.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $v.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "qmesh.selectorLabels" . | nindent 6 }}
{{- end }}
{{- if $v.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $full }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "qmesh.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $full }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- if $v.keda.enabled }}
{{- $stream := get (dict "local" "QMESH_LOCAL" "remote" "QMESH_REMOTE") $name }}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $full }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "qmesh.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    name: {{ $full }}
  minReplicaCount: {{ $v.keda.minReplicas }}
  maxReplicaCount: {{ $v.keda.maxReplicas }}
  triggers:
    - type: nats-jetstream
      metadata:
        natsServerMonitoringEndpoint: {{ $root.Values.keda.natsMonitoringEndpoint | quote }}
        account: {{ ternary "$G" $root.Values.natsAuth.account (eq $root.Values.natsAuth.mode "none") | quote }}
        stream: {{ $stream }}
        consumer: {{ $name }}
        lagThreshold: {{ $v.keda.lagThreshold | quote }}
        activationLagThreshold: {{ $v.keda.activationLagThreshold | quote }}
        useHttps: {{ $root.Values.keda.useHttps | quote }}
{{- end }}
{{- end }}
{{- end -}}
