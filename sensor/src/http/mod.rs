//! HTTP request/response understanding of captured bytes (issue 3 groundwork).
