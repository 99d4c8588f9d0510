"""HTTP views: thin handlers (validate -> service -> respond), one module per area."""
