# Samples the total size of the files in DIR every 10 ms until STOPFILE exists;
# prints the peak and the files at that moment (longrun.sh).
import os, sys, time
d, stop = sys.argv[1], sys.argv[2]
peak, at = 0, None
while not os.path.exists(stop):
    try:
        files = {}
        for e in os.scandir(d):
            try: files[e.name] = e.stat().st_size
            except FileNotFoundError: pass
        s = sum(files.values())
        if s > peak: peak, at = s, files
    except FileNotFoundError:
        pass
    time.sleep(0.01)
print("peak", peak, sorted(at.items()) if at else None)
