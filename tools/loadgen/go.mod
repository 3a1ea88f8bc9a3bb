module github.com/mcloudtt/mcloudtt/tools/loadgen

go 1.25.0
