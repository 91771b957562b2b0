package initiator

// SetDirectDataIn lets the benchmarks of package initiator_test compare the direct
// Data-In receive with the copying one.
func SetDirectDataIn(on bool) { directDataIn = on }
