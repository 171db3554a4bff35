{{/* Names and labels shared by every object. */}}
{{- define "cmet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cmet.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cmet.labels" -}}
{{ include "cmet.selector" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The Secret holding the CMET_* secrets: the chart's own, or one the operator made (existingSecret). */}}
{{- define "cmet.secretName" -}}
{{- .Values.existingSecret | default (include "cmet.fullname" .) -}}
{{- end -}}

{{/* image: repository:tag, or repository@digest when a digest is given (pins the exact build). */}}
{{- define "cmet.image" -}}
{{- $img := index .root.Values.image .kind -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository ($img.tag | default .root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Pod-level security: the images' user cmet (uid/gid 10001), no privilege, the runtime's seccomp profile. */}}
{{- define "cmet.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "cmet.containerSecurity" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: {{ .readOnlyRootFilesystem }}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The settings every cmet process reads: the ConfigMap and the Secret, whole (one-to-one CMET_* names). */}}
{{- define "cmet.envFrom" -}}
- configMapRef:
    name: {{ include "cmet.fullname" . }}
- secretRef:
    name: {{ include "cmet.secretName" . }}
{{- end -}}

{{- define "cmet.podCommon" -}}
serviceAccountName: {{ include "cmet.fullname" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
securityContext: {{- include "cmet.podSecurity" . | nindent 2 }}
{{- end -}}

{{/* The checks checkov makes that this chart waives, each with its reason (deploy/helm/cmet/README.md). */}}
{{- define "cmet.checkovWaivers" -}}
checkov.io/skip1: "CKV_K8S_43=Images are pinned by tag (the chart's appVersion); set image.*.digest to pin by digest, which a chart cannot know before the images are built"
checkov.io/skip2: "CKV_K8S_15=imagePullPolicy follows values (IfNotPresent by default): tags are immutable releases, and GPU nodes should not pull several GB at every start"
checkov.io/skip3: "CKV_K8S_35=cmet reads its settings from CMET_* environment variables only (one settings object, decision 0007); the Secret is mounted whole with envFrom, never copied into the manifest"
{{- end -}}

{{/* A setting's value as its variable holds it: maps as JSON, whole numbers without an exponent (values
arrive as floats: 524288000 would print as 5.24288e+08), the rest as text. */}}
{{- define "cmet.settingValue" -}}
{{- if or (kindIs "map" .) (kindIs "slice" .) -}}
{{- toJson . -}}
{{- else if and (kindIs "float64" .) (eq . (float64 (int64 .))) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}
