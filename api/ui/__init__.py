"""The web dashboard, served under /ui/: server-rendered pages over the same store, engine and
rules as the API, signed in with a service-user token (see `api.ui.routes`)."""
