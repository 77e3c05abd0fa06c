module github.com/chimirror/chimirror

go 1.26.8

require (
	github.com/gorilla/websocket v1.5.3
	golang.org/x/sys v0.49.0
)

require github.com/BurntSushi/toml v1.6.0
