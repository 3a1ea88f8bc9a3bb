module github.com/mcloudtt/mcloudtt/tools/loadgen

go 1.26.0

require github.com/mcloudtt/mcloudtt/pkg v0.0.0

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/kelseyhightower/envconfig v1.4.0 // indirect
	github.com/redis/go-redis/v9 v9.23.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

replace github.com/mcloudtt/mcloudtt/pkg => ../../pkg
