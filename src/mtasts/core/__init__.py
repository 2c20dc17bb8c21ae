"""The pure core: no asyncio, aiohttp, dns, sqlite or clock (a test enforces it)."""
