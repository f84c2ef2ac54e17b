{{/*
The operator's permissions: in the namespaces it watches, and on its Lease for leader election. The same
rules as manifests/operator.yaml's ClusterRole and leader-election Role (the operator's own RBAC, proven on
a real API server by tests/operator); tests/chart keeps them equal.
*/}}
{{- define "ktune.rbacRules" -}}
- apiGroups: [ktune.dev]
  resources: [tuningjobs]
  verbs: [get, list, watch, patch]
- apiGroups: [ktune.dev]
  resources: [tuningjobs/status, trials/status]
  verbs: [patch]
- apiGroups: [ktune.dev]
  resources: [trials]
  verbs: [list, create]
- apiGroups: [ktune.dev]
  resources: [tuningjobs/finalizers, trials/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, create, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{- define "ktune.leaderElectionRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
{{- end }}
