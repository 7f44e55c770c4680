# An agent that runs but never listens on its port.
import time
time.sleep(3600)
