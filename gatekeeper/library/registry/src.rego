package k8simagegateregistry

import data.lib.imagegate.gatekeeper.pods
import data.lib.imagegate.registry

# Checked from the reference alone: no external-data call.
violation contains {"msg": msg, "details": {"image": image}} if {
	some image in pods.images
	some msg in registry.violations(image, null, input.parameters)
}
