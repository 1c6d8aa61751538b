from alpine as build
run echo lower

from alpine
copy --from=build /etc/hostname /h
cmd ["sh"]
