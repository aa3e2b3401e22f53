module fairway.dev/tests/node/images

go 1.26.0

require github.com/valyala/fasthttp v1.80.0

require (
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/molecule-man/go-brrr v1.3.1 // indirect
	github.com/valyala/bytebufferpool v1.0.0 // indirect
)
