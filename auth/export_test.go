package auth

import "github.com/redis/go-redis/v9"

// CPUPerOp lets the external tests report cpu-ns/op as this package's do.
var CPUPerOp = cpuPerOp

// RedisClient is the client rc's checks go through, for tests to hook.
func RedisClient(rc *RedisCounters) *redis.Client { return rc.shared.client }
