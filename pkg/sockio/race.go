//go:build race

package sockio

const raceBuild = true
