package k8simagegatenaming

import data.lib.imagegate.gatekeeper.pods
import data.lib.imagegate.naming

# Checked from the reference alone: no external-data call.
violation contains {"msg": msg, "details": {"image": image}} if {
	some image in pods.images
	some msg in naming.violations(image, null, input.parameters)
}
