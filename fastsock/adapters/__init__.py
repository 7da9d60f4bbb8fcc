"""Run fastsock protocols on other event loops (asyncio, uvloop): see :mod:`.aio`."""
