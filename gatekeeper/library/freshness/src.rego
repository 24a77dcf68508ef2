package k8simagegatefreshness

import data.lib.imagegate.freshness
import data.lib.imagegate.gatekeeper.externaldata

# Images imagegate could not look at are violations (fail closed).
violation contains {"msg": msg, "details": {"image": image}} if {
	some image in externaldata.unchecked
	msg := externaldata.problem("freshness", image)
}

violation contains {"msg": msg, "details": {"image": image}} if {
	some image, facts in externaldata.facts
	some msg in freshness.violations(image, facts, input.parameters)
}
