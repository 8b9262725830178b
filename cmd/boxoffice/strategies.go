package main

import (
	"boxoffice/inventory"
	boredis "boxoffice/redis"
)

// moreStrategies are the strategies that need a driver, wired here so that package inventory
// imports none: redis-lock over the Redis servers of --redis.
func moreStrategies(redisURLs []string) map[string]inventory.Constructor {
	return map[string]inventory.Constructor{"redis-lock": boredis.Strategy(redisURLs)}
}
