// Package image holds the container image's build files (Dockerfile from
// source, Containerfile.prebuilt for make image) and the test that builds the
// image and checks what it holds: a non-root static binary, the CA roots,
// the ports and the entrypoint the manifests rely on.
package image
