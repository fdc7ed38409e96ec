# Sourced by the network benches: start_orthanc WORK CLI starts Debian's Orthanc as the PACS on two
# free loopback ports, with its storage in WORK and Hilum (AE HILUM) allowed to echo, find, get and
# store, and waits until CLI's `pacs echo` reaches it. Sets $dicom (its DICOM port) and $pid (the
# caller kills it on exit).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_orthanc() {
  local work=$1 cli=$2 http
  dicom=$(free_port); http=$(free_port)
  cat >"$work/orthanc.json" <<JSON
{ "Name": "bench", "StorageDirectory": "$work/storage", "IndexDirectory": "$work/storage",
  "DicomAet": "ORTHANC", "DicomPort": $dicom, "HttpPort": $http, "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false, "Plugins": [],
  "DicomModalities": { "hilum": { "AET": "HILUM", "Host": "127.0.0.1", "Port": 104,
    "AllowEcho": true, "AllowFind": true, "AllowGet": true, "AllowStore": true } } }
JSON
  /usr/sbin/Orthanc --no-jobs "$work/orthanc.json" >"$work/orthanc.log" 2>&1 &
  pid=$!
  until "$cli" pacs echo --peer ORTHANC@127.0.0.1:$dicom --aet HILUM >/dev/null 2>&1; do sleep 0.2; done
}
