package k8simagegatepinning

import data.lib.imagegate.gatekeeper.pods
import data.lib.imagegate.pinning

# Checked from the reference alone: no external-data call.
violation contains {"msg": msg, "details": {"image": image}} if {
	some image in pods.images
	some msg in pinning.violations(image, null, input.parameters)
}
