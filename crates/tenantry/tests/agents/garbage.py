# An agent that accepts connections on 8080 and answers with bytes that are not HTTP.
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8080))
s.listen(16)
while True:
    c, _ = s.accept()
    try:
        c.recv(65536)
        c.sendall(b"\x00\x01 this is not http \xff\r\n\r\n")
    finally:
        c.close()
