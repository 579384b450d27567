// Tools module: pins the CRDs installed in the test cluster (Gateway API standard channel and
// Istio's), copied from the module sources by scripts/k8s-build.sh. Nothing here is built.
module cutover.local/tools/crds

go 1.26.0

require (
	istio.io/api v1.32.0
	sigs.k8s.io/gateway-api v1.4.0
)
