module github.com/mcloudtt/mcloudtt/tools/loadgen

go 1.26.0

require github.com/mcloudtt/mcloudtt/pkg v0.0.0

replace github.com/mcloudtt/mcloudtt/pkg => ../../pkg
