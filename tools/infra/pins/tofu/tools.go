//go:build tools

// Package tofu pins OpenTofu, which scripts/infra-test.sh uses for `tofu fmt -check`, `tofu validate`
// and `tofu test` on terraform/. OpenTofu's replace of hashicorp/hcl by its fork is copied in
// go.mod: replace directives of a dependency do not apply to the module that requires it.
package tofu

import _ "github.com/opentofu/opentofu/cmd/tofu"
