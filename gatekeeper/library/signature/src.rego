package k8simagegatesignature

import data.lib.imagegate.gatekeeper.externaldata
import data.lib.imagegate.signature

# Images imagegate could not look at are violations (fail closed).
violation contains {"msg": msg, "details": {"image": image}} if {
	some image in externaldata.unchecked
	msg := externaldata.problem("signature", image)
}

violation contains {"msg": msg, "details": {"image": image}} if {
	some image, facts in externaldata.facts
	some msg in signature.violations(image, facts, input.parameters)
}
