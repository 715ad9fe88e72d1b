{{/*
Named templates to include in your own pod template. Each takes the root context (.) and reads
this chart's values from .Values.dsmount when this chart is a dependency, else from .Values.

  spec:
    {{- include "dsmount.podSpec" . | nindent 4 }}
    initContainers:
      {{- include "dsmount.sidecar" . | nindent 6 }}
    containers:
      - name: train
        volumeMounts:
          {{- include "dsmount.appMount" . | nindent 10 }}
      {{- include "dsmount.committer" . | nindent 6 }}
    volumes:
      {{- include "dsmount.volumes" . | nindent 6 }}
*/}}

{{/* The image reference. */}}
{{- define "dsmount.image" -}}
{{- $v := .Values.dsmount | default .Values -}}
{{- printf "%s:%s" $v.image.repository (toString $v.image.tag) -}}
{{- end -}}

{{/* Pod-level settings: the service account (workload identity) and, for a writable mount,
a shared process namespace (dsmount commit finds the sidecar's daemon by its pid). */}}
{{- define "dsmount.podSpec" -}}
{{- $v := .Values.dsmount | default .Values -}}
{{- with $v.serviceAccount.name }}
serviceAccountName: {{ . }}
{{- end }}
{{- if $v.writable }}
shareProcessNamespace: true
{{- end }}
{{- end -}}

{{/* The sidecar: an item of initContainers. */}}
{{- define "dsmount.sidecar" -}}
{{- $v := .Values.dsmount | default .Values -}}
{{- $secretNames := list "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "AWS_SESSION_TOKEN" "AZURE_STORAGE_CONNECTION_STRING" "AZURE_STORAGE_KEY" "AZURE_STORAGE_SAS_TOKEN" "AZURE_CLIENT_SECRET" -}}
- name: dsmount
  image: {{ include "dsmount.image" . }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  restartPolicy: Always
  args:
    - mount
    - {{ required "dsmount: set dataset (an id, id prefix or project/name[@version])" $v.dataset | quote }}
    - {{ $v.mountPath | quote }}
    - --foreground
    - --log-format
    - {{ $v.logFormat | default "json" | quote }}
    {{- if $v.allowOther }}
    - --allow-other
    {{- end }}
    {{- if $v.writable }}
    - --writable
    {{- end }}
    {{- if not (kindIs "invalid" $v.uid) }}
    - --uid
    - {{ int64 $v.uid | quote }}
    {{- end }}
    {{- if not (kindIs "invalid" $v.gid) }}
    - --gid
    - {{ int64 $v.gid | quote }}
    {{- end }}
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    - name: DSMOUNT_STORE
      value: {{ required "dsmount: set store (s3://, gs://, az:// URL)" $v.store | quote }}
    - name: DSMOUNT_HOME
      value: /var/lib/dsmount
    - name: DSMOUNT_CACHE_DIR
      value: /var/cache/dsmount
    - name: DSMOUNT_CACHE_SIZE
      value: {{ $v.cache.size | quote }}
    - name: DSMOUNT_NO_PROGRESS
      value: "1"
    {{- if $v.credentials.gcsKeySecretName }}
    - name: GOOGLE_APPLICATION_CREDENTIALS
      value: /var/run/secrets/dsmount/gcs/key.json
    {{- end }}
    {{- range $name, $value := $v.env }}
    {{- if has $name $secretNames }}
    {{- fail (printf "dsmount: %s is a credential: put it in the Secret named by credentials.secretName" $name) }}
    {{- end }}
    - name: {{ $name }}
      value: {{ $value | quote }}
    {{- end }}
  {{- with $v.credentials.secretName }}
  envFrom:
    - secretRef:
        name: {{ . }}
  {{- end }}
  securityContext:
    privileged: true
  startupProbe:
    exec:
      command: [dsmount, status, {{ $v.mountPath | quote }}, --ready]
    {{- toYaml $v.probes.startup | nindent 4 }}
  livenessProbe:
    exec:
      command: [dsmount, status, {{ $v.mountPath | quote }}, --ready]
    {{- toYaml $v.probes.liveness | nindent 4 }}
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  volumeMounts:
    - name: dsmount-data
      mountPath: {{ $v.mountPath | quote }}
      mountPropagation: Bidirectional
    - name: dsmount-home
      mountPath: /var/lib/dsmount
    - name: dsmount-cache
      mountPath: /var/cache/dsmount
    - name: dsmount-fuse
      mountPath: /dev/fuse
    {{- if $v.credentials.gcsKeySecretName }}
    - name: dsmount-gcs-key
      mountPath: /var/run/secrets/dsmount/gcs
      readOnly: true
    {{- end }}
{{- end -}}

{{/* The app's volumeMounts items: the dataset (and, when writable, the signal folder). */}}
{{- define "dsmount.appMount" -}}
{{- $v := .Values.dsmount | default .Values -}}
- name: dsmount-data
  mountPath: {{ $v.mountPath | quote }}
  mountPropagation: HostToContainer
{{- if $v.writable }}
- name: dsmount-signal
  mountPath: /run/dsmount-signal
{{- end }}
{{- end -}}

{{/* Writable only: an item of containers that commits the overlay once the app has touched
/run/dsmount-signal/done, and exits 1 without committing on /run/dsmount-signal/failed. */}}
{{- define "dsmount.committer" -}}
{{- $v := .Values.dsmount | default .Values -}}
{{- if $v.writable }}
- name: dsmount-commit
  image: {{ include "dsmount.image" . }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  command:
    - sh
    - -c
    - |
      until [ -e /run/dsmount-signal/done ] || [ -e /run/dsmount-signal/failed ]; do sleep 2; done
      if [ -e /run/dsmount-signal/failed ]; then
        echo "dsmount-commit: the app failed; nothing committed, the overlay is kept" >&2
        exit 1
      fi
      exec dsmount commit {{ $v.mountPath | quote }}
  env:
    - name: DSMOUNT_STORE
      value: {{ $v.store | quote }}
    - name: DSMOUNT_HOME
      value: /var/lib/dsmount
    - name: DSMOUNT_NO_PROGRESS
      value: "1"
  securityContext:
    allowPrivilegeEscalation: false
  resources:
    {{- toYaml $v.commit.resources | nindent 4 }}
  volumeMounts:
    - name: dsmount-data
      mountPath: {{ $v.mountPath | quote }}
      mountPropagation: HostToContainer
    - name: dsmount-home
      mountPath: /var/lib/dsmount
    - name: dsmount-signal
      mountPath: /run/dsmount-signal
{{- end }}
{{- end -}}

{{/* The pod's volumes items. */}}
{{- define "dsmount.volumes" -}}
{{- $v := .Values.dsmount | default .Values -}}
- name: dsmount-data
  emptyDir: {}
- name: dsmount-home
  {{- if $v.home.claimName }}
  persistentVolumeClaim:
    claimName: {{ $v.home.claimName }}
  {{- else }}
  emptyDir: {}
  {{- end }}
- name: dsmount-cache
  emptyDir:
    sizeLimit: {{ $v.cache.volumeSize }}
- name: dsmount-fuse
  hostPath:
    path: /dev/fuse
    type: CharDevice
{{- if $v.writable }}
- name: dsmount-signal
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}
{{- with $v.credentials.gcsKeySecretName }}
- name: dsmount-gcs-key
  secret:
    secretName: {{ . }}
{{- end }}
{{- end -}}

{{/* Labels of the resources this chart renders itself. */}}
{{- define "dsmount.labels" -}}
app.kubernetes.io/name: dsmount
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}
