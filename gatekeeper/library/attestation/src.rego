package k8simagegateattestation

import data.lib.imagegate.attestation
import data.lib.imagegate.gatekeeper.externaldata

# Images imagegate could not look at are violations (fail closed).
violation contains {"msg": msg, "details": {"image": image}} if {
	some image in externaldata.unchecked
	msg := externaldata.problem("attestation", image)
}

violation contains {"msg": msg, "details": {"image": image}} if {
	some image, facts in externaldata.facts
	some msg in attestation.violations(image, facts, input.parameters)
}
