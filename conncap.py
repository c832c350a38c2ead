import socket, time, sys, subprocess
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port)); socks.append(s)
time.sleep(0.5)
t0 = time.time()
r = subprocess.run(["curl","-s","-o","/dev/null","-w","%{http_code} %{time_total}","-m","20","http://127.0.0.1:%d/metrics"%port], capture_output=True, text=True)
print("with %d idle sockets open, a request: %s" % (n, r.stdout))
