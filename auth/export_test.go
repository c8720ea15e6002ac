package auth

// CPUPerOp lets the external tests report cpu-ns/op as this package's do.
var CPUPerOp = cpuPerOp
