import sys

sys.path.insert(0, "/opt/env/site-packages")
print("service up")
