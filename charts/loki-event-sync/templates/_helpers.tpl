{{/*
Object names are fixed, as in the kustomize install: they are the job's defaults (the Lease
loki-event-sync, the checkpoint configmap://<namespace>/loki-event-sync-checkpoint) and the names its
Role grants by resourceNames, so any release name works without settings.
*/}}
{{- define "les.name" -}}loki-event-sync{{- end }}

{{- define "les.serviceAccountName" -}}
{{- default (include "les.name" .) .Values.serviceAccount.name }}
{{- end }}

{{/* The app.kubernetes.io set of deploy/base, plus Helm's own chart label. */}}
{{- define "les.labels" -}}
app.kubernetes.io/name: {{ include "les.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: event-shipper
app.kubernetes.io/part-of: loki-event-sync
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "les.image" -}}
{{- $img := .Values.image -}}
{{- printf "%s:%s" $img.repository (default (printf "v%s" .Chart.AppVersion) $img.tag) -}}
{{- with $img.digest }}@{{ . }}{{ end -}}
{{- end }}

{{/* Namespaces whose events the job lists: empty for the cluster scope. */}}
{{- define "les.eventNamespaces" -}}
{{- if eq .Values.rbac.scope "namespaces" }}{{ join "," .Values.rbac.namespaces }}{{ end -}}
{{- end }}

{{/* The subject of every binding: the job's ServiceAccount in the release namespace. */}}
{{- define "les.subjects" -}}
subjects:
  - kind: ServiceAccount
    name: {{ include "les.serviceAccountName" . }}
    namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
The Job spec of the CronJob and of the backfill Job: one definition, so the two cannot drift apart.
Called with (dict "root" $ "args" LIST).
*/}}
{{- define "les.jobSpec" -}}
{{- $ := .root -}}
{{- $v := $.Values -}}
# A failed run (exit 1: Loki or the API unreachable) is retried twice; then the next schedule tries again.
backoffLimit: 2
# Exit 2 is a configuration error: retrying cannot fix it, so the Job fails at once. An evicted or
# preempted pod did nothing wrong: it is retried without counting.
podFailurePolicy:
  rules:
    - action: FailJob
      onExitCodes:
        containerName: loki-event-sync
        operator: In
        values: [2]
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
activeDeadlineSeconds: {{ $v.activeDeadlineSeconds }}
ttlSecondsAfterFinished: 86400
template:
  metadata:
    labels:
      {{- include "les.labels" $ | nindent 6 }}
      {{- with .extraLabels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
      {{- with $v.podLabels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $v.podAnnotations }}
    annotations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  spec:
    serviceAccountName: {{ include "les.serviceAccountName" $ }}
    automountServiceAccountToken: true
    # podFailurePolicy requires Never: with OnFailure the exit code never reaches the Job controller.
    restartPolicy: Never
    {{- with $v.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.affinity }}
    affinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.priorityClassName }}
    priorityClassName: {{ . }}
    {{- end }}
    {{- with $v.image.pullSecrets }}
    imagePullSecrets:
      {{- range . }}
      - name: {{ . }}
      {{- end }}
    {{- end }}
    # No runAsUser/runAsGroup: the image's numeric USER (65532, group 0) lets the kubelet verify
    # non-root, and OpenShift's restricted-v2 SCC can assign its own UID.
    securityContext:
      runAsNonRoot: true
      seccompProfile:
        type: RuntimeDefault
    containers:
      - name: loki-event-sync
        image: {{ include "les.image" $ }}
        imagePullPolicy: {{ $v.image.pullPolicy }}
        args: {{ toJson .args }}
        envFrom:
          - configMapRef:
              name: {{ default "loki-event-sync-config" $v.existingConfigMap }}
              {{- if not $v.existingConfigMap }}
              optional: true
              {{- end }}
          - secretRef:
              name: {{ default "loki-event-sync-secret" $v.existingSecret }}
              optional: true
        env:
          - name: LOKI_EVENT_SYNC_NAMESPACE
            valueFrom:
              fieldRef:
                fieldPath: metadata.namespace
          {{- with include "les.eventNamespaces" $ }}
          - name: LOKI_EVENT_SYNC_EVENT_NAMESPACES
            value: {{ . | quote }}
          {{- end }}
          {{- with $v.extraEnv }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          capabilities:
            drop: ["ALL"]
        resources:
          {{- toYaml $v.resources | nindent 10 }}
        volumeMounts:
          - name: tmp
            mountPath: /tmp
    volumes:
      - name: tmp
        emptyDir:
          sizeLimit: 64Mi
{{- end }}
