# An agent that dies before it ever listens.
import sys
print("crashing on purpose", flush=True)
sys.exit(3)
