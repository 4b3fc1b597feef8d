dist_man_MANS += man/spatc.1 man/spat.5 man/libspat.3
