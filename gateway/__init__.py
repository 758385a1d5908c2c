"""WebSocket gateway: sessions, routing to replica groups, market data."""
